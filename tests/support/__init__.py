"""What the tests share: one copy of each piece of test infrastructure.

- :mod:`tests.support.net`: free ports, probes, uvicorn serving an app in a thread, stub upstreams;
- :mod:`tests.support.clock`: injectable clocks;
- :mod:`tests.support.wait`: bounded polling (``wait_until``) and running threads at once;
- :mod:`tests.support.cli`: ``zkid`` as a subprocess, in-process (Typer) and as a server;
- :mod:`tests.support.node`: whether node and the JS reference libraries are installed;
- :mod:`tests.support.registry`: a real registry (Anvil, service, HTTP) for a test module;
- :mod:`tests.support.vectors`: the recorded known answers in tests/vectors/.
"""
