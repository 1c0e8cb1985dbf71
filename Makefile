# sprec build. `make` builds build/sprec, with the CUDA backend when nvcc is found
# (`make CUDA=0` forces it off) and with MPI ranks when mpicc is found (`make MPI=0` forces it
# off); `make test` runs the suite; `make test-gpu` compares the
# CUDA backend with the CPU one on a GPU (tests/gpu/); `make demo` the main job on the
# embedded synthetic world: SFT -> DPO-RN -> SPRec, table + PNG (docs/RESULTS.md); `make demo-toy`
# a one-minute SFT from scratch on the built-in sequence-reversal task.
# `make` alone builds `all` (rules for single objects, e.g. dist_mpi.o's link-flags dependency, come first)
.DEFAULT_GOAL := all
CC      ?= gcc
OPT     ?= -O3 -march=native
# -Wpointer-arith: act buffers are void * (kernels/backend.h); arithmetic on them must go through act_at
# -I. -Ihost: host files include across folders as "model/model.h", kernels as "kernels/backend.h"
BASE_CFLAGS := -fno-math-errno -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wpointer-arith -fopenmp -g -I. -Ihost
CFLAGS  += $(OPT) $(BASE_CFLAGS)
# build/asan/sprec: the same program under AddressSanitizer + UBSan; the
# bad-input tests run it so a malformed file can never hide a memory error
ASAN    := -O1 -march=native -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# Libraries come from the system (Debian paths) unless DEPS_ROOT names a tree
# with the same layout, e.g. build-deps/root made by `dpkg -x` of the packages
# scripts/offline_deps.sh downloads (tests/gpu/run.sh on a machine without apt).
DEPS_ROOT ?=
LIBDIR  := $(DEPS_ROOT)/usr/lib/x86_64-linux-gnu
BLASDIR := $(LIBDIR)/openblas-openmp
INCS    := -I$(DEPS_ROOT)/usr/include/hdf5/serial -I$(DEPS_ROOT)/usr/include/x86_64-linux-gnu/openblas-openmp \
           -I$(DEPS_ROOT)/usr/include/cjson $(if $(DEPS_ROOT),-I$(DEPS_ROOT)/usr/include)
# with DEPS_ROOT, an RPATH (not RUNPATH: it also serves libhdf5's own dependencies) to the unpacked libraries
ifneq ($(DEPS_ROOT),)
DEPS_RPATH := -Wl,--disable-new-dtags -Wl,-rpath,$(abspath $(LIBDIR)):$(abspath $(DEPS_ROOT)/lib/x86_64-linux-gnu) -L$(LIBDIR)
endif
LIBS    := -L$(LIBDIR)/hdf5/serial -lhdf5 -L$(BLASDIR) -lopenblas -Wl,-rpath,$(abspath $(BLASDIR)) $(DEPS_RPATH) \
           -linih -lcjson -lpcre2-8 -lm -fopenmp
BUILD   := build
# scripts/setup.sh (apt) runs before every build unless SETUP=0 (machines without apt or network)
SETUP   ?= 1

# ---- CUDA: on when nvcc is found (on PATH or in /usr/local/cuda), off with CUDA=0 ----------------------------
ifeq ($(origin NVCC),undefined)
NVCC    := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
endif
CUDA_SRC   := $(wildcard kernels/cuda/*.cu)
CUDA    ?= $(if $(and $(NVCC),$(CUDA_SRC)),1,0)
ifeq ($(CUDA),1)
ifeq ($(NVCC),)
$(error CUDA=1 but nvcc was not found (set NVCC=/path/to/nvcc, or CUDA=0))
endif
endif
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(realpath $(NVCC))))
# sm_90 machine code (H100/H200) + compute_80 PTX that the driver JIT-compiles for any newer or other Ampere+ GPU
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS ?= -std=c++17 -O3 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-fPIC -I.
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lcublas -Wl,-rpath,$(CUDA_HOME)/lib64 -lstdc++

# ---- MPI (Open MPI): on when mpicc is found, off with MPI=0 --------------------------------------------------
# host/base/dist/dist_mpi.c (the ranks mpirun/srun start) + heartbeat.c replace dist_single.c; only they see mpi.h
ifeq ($(origin MPICC),undefined)
MPICC   := $(shell command -v mpicc 2>/dev/null)
endif
MPI     ?= $(if $(MPICC),1,0)
ifeq ($(MPI),1)
ifeq ($(MPICC),)
$(error MPI=1 but mpicc was not found (install openmpi-bin and libopenmpi-dev, or MPI=0))
endif
MPI_CFLAGS := $(shell $(MPICC) --showme:compile)
MPI_LIBS   := $(shell $(MPICC) --showme:link)
DIST_SKIP  := host/base/dist/dist_single.c
MPI_NOTE   := with MPI ($(MPICC))
else
DIST_SKIP  := host/base/dist/dist_mpi.c host/base/dist/heartbeat.c
MPI_NOTE   := without MPI ($(if $(MPICC),MPI=0,mpicc not found): one process only)
endif
$(BUILD)/obj/host/base/dist/dist_mpi.o $(BUILD)/obj/host/base/dist/heartbeat.o: INCS += $(MPI_CFLAGS)
# ---- NCCL: multi-rank --device cuda sums gradients with NCCL; on with CUDA and MPI when nccl.h is found, off with NCCL=0
NCCL_H  := $(if $(filter 1,$(CUDA)),$(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h)))
NCCL    ?= $(if $(and $(filter 1,$(MPI)),$(NCCL_H)),1,0)
ifeq ($(NCCL),1)
$(BUILD)/obj/host/base/dist/dist_mpi.o: INCS += -DSPREC_NCCL -I$(CUDA_HOME)/include
MPI_LIBS   += -lnccl
MPI_NOTE   += + NCCL
endif
# (the NCCL choice changes the link flags: dist_mpi.o follows)
$(BUILD)/obj/host/base/dist/dist_mpi.o: $(BUILD)/.link-flags

KERNEL_SRC := $(wildcard kernels/*.c kernels/cpu/*.c)
HOST_ALL   := $(filter-out host/cli/main.c,$(wildcard host/*/*.c host/*/*/*.c))
HOST_SRC   := $(filter-out $(DIST_SKIP),$(HOST_ALL))
ifeq ($(CUDA),1)
# the CUDA objects replace the stand-in backend_cuda() of kernels/cpu/no_cuda.c
LIB_OBJ    := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out kernels/cpu/no_cuda.c,$(KERNEL_SRC)) $(HOST_SRC)) \
              $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC))
LINK_LIBS  := $(LIBS) $(CUDA_LIBS) $(MPI_LIBS)
CUDA_NOTE  := with CUDA ($(NVCC), CUDA_HOME $(CUDA_HOME))
else
LIB_OBJ    := $(patsubst %.c,$(BUILD)/obj/%.o,$(KERNEL_SRC) $(HOST_SRC))
LINK_LIBS  := $(LIBS) $(MPI_LIBS)
CUDA_NOTE  := without CUDA ($(if $(NVCC),CUDA=0,nvcc not found): --device cuda is unavailable)
endif
# the ASan build is CPU-only (kernels/cpu/no_cuda.c): the sanitizers do not see into GPU code anyway;
# and single-process (dist_single.c)
ASAN_OBJ   := $(patsubst %.c,$(BUILD)/asan/obj/%.o,host/cli/main.c $(KERNEL_SRC) \
              $(filter-out host/base/dist/dist_mpi.c host/base/dist/heartbeat.c,$(HOST_ALL)))
TEST_SRC   := $(wildcard tests/unit/*.c)
TEST_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(TEST_SRC))
GPU_TEST_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/gpu/*.c))

.PHONY: all deps cuda-note test test-slurm test-gpu demo demo-toy bench clean fuzz fuzz-ci FORCE
all: deps cuda-note $(BUILD)/sprec

deps:
ifeq ($(SETUP),1)
	@scripts/setup.sh --quiet
endif

cuda-note:
	@echo "sprec: building $(CUDA_NOTE), $(MPI_NOTE)"

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INCS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(BUILD)/.nvcc-flags
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -MT $@ -c $< -o $@

# make sees only timestamps: these stamps change (and force a rebuild) when the
# CUDA choice, the link flags or the nvcc flags (CUDA_ARCH) do
$(BUILD)/.link-flags: FORCE
	@mkdir -p $(BUILD)
	@echo 'CUDA=$(CUDA) $(LINK_LIBS)' | cmp -s - $@ || echo 'CUDA=$(CUDA) $(LINK_LIBS)' > $@
$(BUILD)/.nvcc-flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(NVCC) $(NVCCFLAGS)' | cmp -s - $@ || echo '$(NVCC) $(NVCCFLAGS)' > $@

# tests/gpu asks the CUDA runtime whether a GPU is there before touching the backend
$(GPU_TEST_OBJ): INCS += -I$(CUDA_HOME)/include

$(BUILD)/sprec: $(BUILD)/obj/host/cli/main.o $(LIB_OBJ) $(BUILD)/.link-flags
	$(CC) $(CFLAGS) $(filter %.o,$^) -o $@ $(LINK_LIBS)

$(BUILD)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(ASAN) $(INCS) -MMD -MP -c $< -o $@

$(BUILD)/asan/sprec: $(ASAN_OBJ)
	$(CC) $(BASE_CFLAGS) $(ASAN) $^ -o $@ $(LIBS)

# the end-to-end tests run build/sprec and build/asan/sprec: building the test binary builds them
# too, so build/test_sprec runs on its own (SPREC_TEST_FILTER=pattern selects tests)
$(BUILD)/test_sprec: $(TEST_OBJ) $(LIB_OBJ) $(BUILD)/.link-flags | $(BUILD)/sprec $(BUILD)/asan/sprec
	$(CC) $(CFLAGS) $(filter %.o,$^) -o $@ $(LINK_LIBS) -lcmocka -lz

$(BUILD)/test_gpu: $(GPU_TEST_OBJ) $(LIB_OBJ) $(BUILD)/.link-flags
	$(CC) $(CFLAGS) $(filter %.o,$^) -o $@ $(LINK_LIBS)

# with CUDA, `make test` also builds build/test_gpu (so it keeps compiling) and runs its self-test (the
# harness on the CPU's bf16 emulation, no GPU needed; tests/gpu/selftest.sh, which also checks the size of
# what a lent GPU machine's run carries); on a GPU it runs in `make test-gpu`
test: all $(BUILD)/test_sprec $(BUILD)/asan/sprec $(if $(filter 1,$(CUDA)),$(BUILD)/test_gpu)
	@python3 tests/layers/check_layers.py
	@$(MAKE) --no-print-directory test-slurm
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BUILD)/test_sprec
	@tests/gpu/selftest.sh $(BUILD) $(CUDA)
	@$(MAKE) --no-print-directory fuzz-ci

# ---- fuzzing (tests/fuzz, docs/testing.md "Fuzzing"): libFuzzer harnesses over the readers of user files ----
# build/fuzz/fuzz_NAME: clang's libFuzzer + ASan + UBSan over the CPU-only host code, with tests/fuzz/fuzz.c in
# place of kernels/errors.c (a rejected input returns to the harness). `make fuzz` mutates each harness's
# committed seeds (tests/fuzz/corpus/NAME) for FUZZ_SECONDS; `make test` runs `make fuzz-ci`: each harness for
# FUZZ_CI_SECONDS from the committed seeds alone, with a fixed -seed (the same mutations each time).
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 20
FUZZ_CI_SECONDS ?= 20
FUZZ_CFLAGS  := $(filter-out -fopenmp,$(BASE_CFLAGS)) -fopenmp -O1 -fno-omit-frame-pointer -Wno-unknown-pragmas -Wno-pass-failed \
                -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_OBJ     := $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,tests/fuzz/fuzz.c $(filter-out kernels/errors.c,$(KERNEL_SRC)) \
                $(filter-out host/base/dist/dist_mpi.c host/base/dist/heartbeat.c,$(HOST_ALL)))
# leaks: a rejected input leaves the reader's allocations behind by design (sprec exits there)
FUZZ_RUN     := ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1
FUZZ_ARGS    := -detect_leaks=0 -timeout=10 -rss_limit_mb=2048 -max_len=262144

.PRECIOUS: $(BUILD)/fuzz/obj/%.o
$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(INCS) -MMD -MP -c $< -o $@

$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_OBJ)
	@echo "$(FUZZ_CC) ... -fsanitize=fuzzer -o $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(LIBS)

fuzz: $(addprefix $(BUILD)/fuzz/fuzz_,$(FUZZ_NAMES))
	@for t in $(FUZZ_NAMES); do mkdir -p $(BUILD)/fuzz/corpus/$$t; \
	  $(FUZZ_RUN) $(BUILD)/fuzz/fuzz_$$t $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/fuzz/$$t- \
	    $(BUILD)/fuzz/corpus/$$t tests/fuzz/corpus/$$t > $(BUILD)/fuzz/$$t.log 2>&1 \
	    || { tail -40 $(BUILD)/fuzz/$$t.log; echo "fuzz $$t: FAILED (input saved as $(BUILD)/fuzz/$$t-*)"; exit 1; }; \
	  echo "fuzz $$t: $$(grep -o 'Done [0-9]* runs in [0-9]* second' $(BUILD)/fuzz/$$t.log), no crash"; done

fuzz-ci: $(addprefix $(BUILD)/fuzz/fuzz_,$(FUZZ_NAMES))
	@for t in $(FUZZ_NAMES); do rm -rf $(BUILD)/fuzz/ci/$$t; mkdir -p $(BUILD)/fuzz/ci/$$t; \
	  $(FUZZ_RUN) $(BUILD)/fuzz/fuzz_$$t $(FUZZ_ARGS) -seed=1 -max_total_time=$(FUZZ_CI_SECONDS) \
	    -artifact_prefix=$(BUILD)/fuzz/$$t- $(BUILD)/fuzz/ci/$$t tests/fuzz/corpus/$$t > $(BUILD)/fuzz/$$t-ci.log 2>&1 \
	    || { tail -40 $(BUILD)/fuzz/$$t-ci.log; echo "fuzz-ci $$t: FAILED (input saved as $(BUILD)/fuzz/$$t-*)"; exit 1; }; \
	  echo "fuzz-ci $$t: $$(ls tests/fuzz/corpus/$$t | wc -l) seeds, $$(grep -o 'Done [0-9]* runs in [0-9]* second' \
	    $(BUILD)/fuzz/$$t-ci.log), no crash"; done

# the scripts/slurm batch jobs on a one-node SLURM cluster started by the test (~30 s; skipped, exit 0, when
# SLURM/munge are not installed or build/sprec has no MPI): docs/cluster.md
test-slurm: $(BUILD)/sprec
	@tests/slurm/run.sh; rc=$$?; [ $$rc = 77 ] || exit $$rc

# CUDA backend vs CPU backend, op by op and on whole models; exit 77 (skipped) without a GPU
test-gpu: all
ifeq ($(CUDA),1)
	@$(MAKE) --no-print-directory $(BUILD)/test_gpu
	@$(BUILD)/test_gpu; rc=$$?; if [ $$rc = 77 ]; then echo "test-gpu: skipped (no GPU)"; else exit $$rc; fi
else
	@echo "test-gpu: sprec is built without CUDA (nvcc not found or CUDA=0): nothing to test"; exit 1
endif

# the SPRec pipeline on the synthetic world: SFT -> DPO-RN -> SPRec, table + PNG (docs/RESULTS.md)
demo: all
	@scripts/demo_sprec.sh

demo-toy: all
	@scripts/demo.sh

# make bench [DEVICE=cuda]: sprec vs PyTorch side by side (scripts/bench.sh)
DEVICE ?= cpu
bench: all
	@DEVICE=$(DEVICE) scripts/bench.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/asan/obj $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)
