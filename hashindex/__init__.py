"""Code index files and Hamming search: what a trained model leaves for retrieval.

- `index_file`: one .npz file with a database's packed codes, ids, labels, captions and
  metadata, written atomically and read without pickle;
- `hamming_search`: exact (FAISS or numpy popcount) and approximate (HNSW, IVF) k-nearest
  neighbours by Hamming distance, ties in index order as in evaluation;
- `build`: encode a split with a trained checkpoint into a code index (scripts/build_index.py);
- `query`: the library behind scripts/search.py: turn a text, an image or an item id into a
  query code with the checkpoint the index was built with, search, and format the results.
- `encoders`: a checkpoint's one-side query encoders exported as ONNX / TorchScript files with their
  facts in the metadata (scripts/export.py), checked against PyTorch, and run by onnxruntime for search.
"""
