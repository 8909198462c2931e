"""hexpsi: check a planned strike against another party's protected positions, privately.

One import name for the whole project. ``hexpsi.protocol`` is the sans-IO
protocol core (the top-level ``protocol/`` folder), ``hexpsi.server`` the
adapters to gRPC, disk and the command line (``server/``), and
``hexpsi/seeds`` the demo scenario (``seeds/``). Those folders stay where they
are in a checkout; the symbolic links in ``hexpsi/`` map them into this one
package, so a checkout, an editable install and a wheel import the same names.
"""
