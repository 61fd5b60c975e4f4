#!/usr/bin/env python
"""Label-efficiency study on the synthetic world: test UAR against labelled clips per class, linear probe and
fine-tuning, pre-trained vs random weights, several seeds; a PNG plot and a JSON / Markdown table.

The code is :mod:`maedfer.apps.label_efficiency`.
"""

from maedfer.apps.label_efficiency import main

if __name__ == "__main__":
    main()
