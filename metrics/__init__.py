"""The fast engines behind evaluate.py's metric API. evaluate.py holds the definitions
(plain functions) and the API; these modules compute the same numbers at scale.

- `inputs`: checking and binarising codes and labels, packing them into machine words;
- `hamming`: counting ranking of Hamming distances (ties in database-index order): mAP@K,
  mAP@all, precision@K and the distance histograms in two O(N) passes per query, no sort;
- `cosine`: ranking of real-valued outputs by cosine similarity with packed sort keys;
- `tie_aware`: the tie-aware mAP (He et al., CVPR 2018) from the distance histograms;
- `curves`: precision-recall by Hamming radius and precision@K curves (ranking_curves), curves.json.
"""
