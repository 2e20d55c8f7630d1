from tools.devstack.cli import app

app()
