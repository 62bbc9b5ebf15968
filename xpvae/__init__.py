"""xpvae"""
