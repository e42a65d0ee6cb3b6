"""`python -m engine.train`: the command line lives in engine.cli.train; this file only lets the
documented command keep its name."""
import sys

from engine.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
