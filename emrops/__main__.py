from emrops.cli.main import run

run()
