"""Pure domain logic: money, windows, prices, attribution and the cost report model.

Nothing here does I/O or reads the clock; time and data are passed in.
"""
