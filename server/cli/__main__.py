"""``python -m server.cli`` runs the ``hexpsi`` command."""

from server.cli.main import entry

if __name__ == "__main__":
    entry()
