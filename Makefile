# Convenience targets; the README's two commands need no make.
.PHONY: test test-v2 bench

test:
	bash scripts/test.sh

# the cgroup tests in a qemu guest on a pure cgroup v2 kernel (tests/vm_v2.py)
test-v2:
	python3 tests/vm_v2.py

bench:
	bash scripts/bench.sh
