# Convenience targets; the README's two commands need no make.
.PHONY: test test-kernels test-unprivileged bench

test:
	bash scripts/test.sh

# the whole suite in qemu guests: Debian's 6.1 and 6.12 kernels, pure cgroup v2 and
# hybrid (tests/vm.py; one line per combination, non-zero if any failed; a test file
# whose pass is recorded for the same code is reported, not run again: tests/vmrecords.py)
test-kernels:
	python3 tests/vm.py --matrix --quiet --jobs 2

# the tests that need no privilege, as a user made for the run (tests/unprivileged.py)
test-unprivileged:
	python3 tests/unprivileged.py

bench:
	bash scripts/bench.sh
