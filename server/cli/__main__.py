"""``python -m hexpsi.server.cli`` runs the ``hexpsi`` command."""

from hexpsi.server.cli.main import entry

if __name__ == "__main__":
    entry()
