"""Geometry and tokens.

Shapes, the sphere, conservative H3 covers, input parsing and the token hierarchy.
"""
