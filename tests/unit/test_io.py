"""io.install_dir: a finished folder replaces the old one whole, and nothing is left beside it."""

from residual_response.io import install_dir, make_temp_dir


def _folder(parent, name, text):
    tmp = make_temp_dir(parent, name)
    (tmp / "data.txt").write_text(text)
    return tmp


def test_install_dir_puts_the_folder_in_place_and_replaces_an_old_one(tmp_path):
    final = tmp_path / "entry"
    assert install_dir(_folder(tmp_path, "entry", "first"), final) == final
    assert (final / "data.txt").read_text() == "first"
    (final / "stale.txt").write_text("from the old folder")
    install_dir(_folder(tmp_path, "entry", "second"), final)
    assert sorted(p.name for p in final.iterdir()) == ["data.txt"]  # nothing of the old folder survives
    assert (final / "data.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no temporary left beside it
