"""bbuvl.infer"""
