import sys
sys.argv = ["x"]
sys.path.insert(0, "results/kernels/bk-halo-run45")
import bk_halo
cases = [("bench", 2, 300, 20, 32, 64, False), ("bench", 1, 37, 5, 8, 16, False), ("bench", 2, 100, 20, 12, 8, True), ("model", 1, 1024, 70, 128, 128, False), ("spectrum", 1, 512, 16, 64, 64, True), ("bench", 1, 1024, 16, 128, 64, False)]
for c in cases:
    for reverse in (False, True):
        bk_halo._check_case("cuda", *c, reverse, True)
