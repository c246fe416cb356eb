"""bbuvl.eval"""
