from embedkd.cli import main

main()
