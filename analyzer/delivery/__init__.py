"""Delivery: where reports, history and the weekly digest go (a directory or bucket, and email).

Everything here takes rendered bytes or an Analysis and moves it somewhere; nothing analyzes.
"""
