# Thin wrapper over CMake; the real build is CMakeLists.txt.
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all test bench demo clean format

all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# The whole suite (installs dependencies, two builds, ctest): what CI runs.
test:
	bash scripts/test.sh

# Benchmarks are not tests: each prints ratios against a baseline measured in
# the same run.
bench: all
	cmake --build $(BUILD) -j$(JOBS) --target bench_all
	@fail=0; for b in $(BUILD)/bench/*; do \
		[ -x "$$b" ] && [ -f "$$b" ] || continue; \
		echo "== $$b"; VMSIGD=$${VMSIGD:-$(BUILD)/src/daemon/vmsigd} \
			VMSIG_GUEST_DIR=$${VMSIG_GUEST_DIR:-$(BUILD)/tests/vm/guest} \
			"$$b" || { echo "== $$b: INVALID (exit $$?)"; fail=1; }; \
	done; exit $$fail

demo:
	bash scripts/demo.sh

format:
	$${CLANG_FORMAT:-clang-format-14} -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan
