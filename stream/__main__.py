from nextbehavior.stream.cli import main

main()
