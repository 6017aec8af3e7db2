"""`python -m unlearn_lab.cli`: the same entry point as the `unlearn-lab` script."""

from unlearn_lab.cli import main

main()
