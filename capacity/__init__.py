"""A capacity model of the AWS path that users run: ``make capacity``.

A discrete-event simulation of webhook -> API Gateway -> receiver -> DynamoDB stream -> processor ->
Flinks (``model``), fed with what ``make bench`` measured (``measured``), priced with the benchmarks'
price list (``cost``), searched for the settings each rate needs (``recommend``) and checked against
the local stack (``local_check``). Pure stdlib except ``local_check`` (the local stack) and ``charts``
(matplotlib, in .venv-bench). See docs/performance.md, "Capacity model".
"""
