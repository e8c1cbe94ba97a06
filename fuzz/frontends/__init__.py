SEED_MAX = 2**32 - 1  # libFuzzer's -seed is an unsigned int (`stoul` into a 32-bit flag)
