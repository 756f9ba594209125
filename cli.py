"""Run the effkit command line without installing: `python cli.py trace resnet50`."""
from effkit.cli import main

if __name__ == "__main__":
    main()
