"""Applications built on the library: the experiment runner, inference, prediction, features, figures, model cards
and profiling. Nothing in the library imports these modules."""
