"""`python -m bench`: run every benchmark and write bench/results/."""

from bench.run import main

if __name__ == "__main__":
    main()
