from ecg_sweep.cli.app import main

main()
