"""`python -m effkit ...`: the command line (what `effkit sweep --gpus` starts under torchrun)."""
from effkit.cli import main

main()
