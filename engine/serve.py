"""`python -m engine.serve`: the command line lives in engine.cli.serve, the service in engine.service
and engine.inference; this file only gives the documented command its name."""
import sys

from engine.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
