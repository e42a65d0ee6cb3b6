"""`python -m engine.lr_find`: the command line lives in engine.cli.lr_find; this file only lets the
documented command keep its name."""
import sys

from engine.cli.lr_find import main

if __name__ == "__main__":
    sys.exit(main())
