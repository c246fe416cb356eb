"""bbuvl.resources"""
