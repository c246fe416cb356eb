"""bbuvl.diagnostics"""
