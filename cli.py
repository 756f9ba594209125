"""Run the effkit command line from a checkout without installing it: `python cli.py trace resnet50`.

It still needs effkit's dependencies (torch, pandas, matplotlib, rich, typer, jinja2, fvcore, nvidia-ml-py) in the
Python that runs it; where they are missing it says which and how to install them, instead of a traceback."""
import sys

if __name__ == "__main__":
    try:
        import torch  # noqa: F401
        import typer  # noqa: F401
        from effkit.cli import main
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        print(f"error: python cli.py needs effkit's dependencies in this Python ({sys.executable}); {missing!r} is missing. "
              "Install them with: pip install torch==2.13.0 -e .  (or use the README's first command, which makes a .venv)",
              file=sys.stderr)
        sys.exit(2)
    main()
