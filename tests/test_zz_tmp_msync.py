import sys
sys.path.insert(0, "/tmp/s4")
def test_sc_msync(capsys):
    import step_costs_msync
    step_costs_msync.main()
