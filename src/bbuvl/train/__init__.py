"""bbuvl.train"""
