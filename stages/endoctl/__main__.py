from endoctl.cli import app

app(prog_name="endoctl")
