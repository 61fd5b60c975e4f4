"""Applications built on the library: the experiment runner, inference, prediction, features, figures, model cards,
profiling, and the command line of every tool (each module's ``main(argv)`` is a ``maedfer <command>``, see
:mod:`maedfer.cli`; ``tools/<name>.py`` are thin wrappers). Nothing in the library imports these modules."""
