def main() -> None:
    raise SystemExit("placeholder")
