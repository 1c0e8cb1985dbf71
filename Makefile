# sprec build. `make` builds build/sprec (and the CUDA backend when nvcc is found,
# once kernels/cuda/ has sources); `make test` runs the suite; `make demo` the main job on the
# embedded synthetic world: SFT -> DPO-RN -> SPRec, table + PNG (docs/RESULTS.md); `make demo-toy`
# a one-minute SFT from scratch on the built-in sequence-reversal task.
CC      ?= gcc
OPT     ?= -O3 -march=native
BASE_CFLAGS := -fno-math-errno -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -g
CFLAGS  += $(OPT) $(BASE_CFLAGS)
# build/asan/sprec: the same program under AddressSanitizer + UBSan; the
# bad-input tests run it so a malformed file can never hide a memory error
ASAN    := -O1 -march=native -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
BLASDIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
INCS    := -I/usr/include/hdf5/serial -I/usr/include/x86_64-linux-gnu/openblas-openmp -I/usr/include/cjson
LIBS    := -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -L$(BLASDIR) -lopenblas -Wl,-rpath,$(BLASDIR) \
           -linih -lcjson -lpcre2-8 -lm -fopenmp
BUILD   := build

KERNEL_SRC := $(wildcard kernels/cpu/*.c)
HOST_SRC   := $(filter-out host/main.c,$(wildcard host/*.c))
LIB_OBJ    := $(patsubst %.c,$(BUILD)/obj/%.o,$(KERNEL_SRC) $(HOST_SRC))
ASAN_OBJ   := $(patsubst %.c,$(BUILD)/asan/obj/%.o,host/main.c $(KERNEL_SRC) $(HOST_SRC))
TEST_SRC   := $(wildcard tests/unit/*.c)
TEST_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(TEST_SRC))

.PHONY: all deps test demo demo-toy bench clean
all: deps $(BUILD)/sprec

deps:
	@scripts/setup.sh --quiet

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INCS) -MMD -MP -c $< -o $@

$(BUILD)/sprec: $(BUILD)/obj/host/main.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LIBS)

$(BUILD)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(ASAN) $(INCS) -MMD -MP -c $< -o $@

$(BUILD)/asan/sprec: $(ASAN_OBJ)
	$(CC) $(BASE_CFLAGS) $(ASAN) $^ -o $@ $(LIBS)

$(BUILD)/test_sprec: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LIBS) -lcmocka

test: all $(BUILD)/test_sprec $(BUILD)/asan/sprec
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BUILD)/test_sprec

# the SPRec pipeline on the synthetic world: SFT -> DPO-RN -> SPRec, table + PNG (docs/RESULTS.md)
demo: all
	@scripts/demo_sprec.sh

demo-toy: all
	@scripts/demo.sh

bench: all
	@scripts/bench.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/asan/obj -name '*.d' 2>/dev/null)
