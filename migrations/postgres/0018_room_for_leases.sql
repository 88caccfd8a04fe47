-- A claim's lease (leased_until, claim) changes no indexed column: when the row's page has
-- room, PostgreSQL writes the new version beside the old one and adds no index entry (a HOT
-- update). Filled to the default 100 %, a page of new deliveries has no room, and each lease
-- adds an entry to six of the table's seven indexes. A lease makes a row 24 bytes longer (its
-- two columns go from null to set), so a page filled to half cannot take every row's lease; one
-- filled to 40 % can. Pages written after this are filled so.
ALTER TABLE deliveries SET (fillfactor = 40);
