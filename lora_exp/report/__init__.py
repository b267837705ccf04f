"""Reports: the paper's tables and figures, and its Section 7 analyses, from the run records.

    python -m lora_exp.report <artifact> [--runs DIR ...] [--out DIR]   (see __main__.py)

One concept per module, in the order data flows:

    load.py          records -> pandas; successful runs of the current task version; seed medians
    wandb_source.py  records rebuilt from the wandb API where local ones are missing
    paper.py         the paper's numbers (experiments/<artifact>/paper.csv), matched to our rows
    tables.py        the paper's table layouts (Tables 2, 3, 5, 6 and the embedded studies)
    latency.py       Table 1 and Figure 5 (inference latency and adapter overhead)
    render.py        table.md, table.csv, table.tex (booktabs), byte-reproducible
    plots.py         rank ablation, weight types at a fixed budget, score vs trainable parameters
    subspace.py      Sec. 7 math: subspace similarity φ (Eq. 4), the amplification factor (Table 7)
    section7.py      Sec. 7 over two run directories: heatmaps, subspace.csv, amplification table
    readme.py        the README's results block, regenerated from the table.md files
"""
