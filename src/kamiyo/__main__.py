from kamiyo.cli import main

main()
