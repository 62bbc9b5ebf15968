"""inferencer"""
