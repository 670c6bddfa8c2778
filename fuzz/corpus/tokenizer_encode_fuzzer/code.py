import os


def main(argv):
    for name in argv[1:]:
        print(name, 0x1F, 3.25e-4)
