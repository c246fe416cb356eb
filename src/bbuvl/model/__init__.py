"""bbuvl.model"""
