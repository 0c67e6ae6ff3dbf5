"""Settings chosen per dataset at training time without labels: label-free criteria of code
quality (criteria.py) and the choice of the paired network's modality dropout among short
candidate trainings (choose.py), behind `--modality_dropout auto`."""
