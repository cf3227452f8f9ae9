"""The workflow's stage layer: one module per rule file of ``workflow/rules``.

``rules/<stage>.smk`` → ``videmotion.stages.<stage>`` → the domain modules it imports.
Each function is one rule; its keyword arguments are named like the rule's ``input``,
``output``, ``params`` and wildcards, so that ``workflow/scripts/<rule>.py`` is only
``run_stage(snakemake, <function>)`` (:func:`videmotion.runlog.run_stage`). Only the
scripts and the tests import this layer; no domain module imports it. Heavy imports
(torch, MTCNN) happen inside the stages that need them.
"""
