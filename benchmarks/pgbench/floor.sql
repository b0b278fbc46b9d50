INSERT INTO floor_rows (note) VALUES ('acquired');
INSERT INTO floor_rows (note) VALUES ('released');
