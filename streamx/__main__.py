"""``python -m streamx``: the command line (needs the ``streamx-s3[cli]`` extra)."""

from streamx.cli import main

if __name__ == "__main__":
    main()
