from xpvae.cli import main

main()
