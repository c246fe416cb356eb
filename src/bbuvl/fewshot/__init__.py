"""bbuvl.fewshot"""
