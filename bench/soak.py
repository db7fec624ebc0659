def main(argv: list[str]) -> int:
    raise SystemExit("soak: not yet")
