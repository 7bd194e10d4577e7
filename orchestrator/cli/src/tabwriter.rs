//! Column alignment with the semantics of Go's `text/tabwriter` (left aligned,
//! space padding, no flags), which is what kubectl's tables and describe output use.
//!
//! Cells are separated by `\t`; a cell is part of a column only when a tab
//! terminates it, so the last cell of a line is never padded. A column block is a
//! run of consecutive lines that all have a terminated cell in that column; each
//! block gets the width of its widest cell plus `padding`.

/// Align `text` (lines of tab-separated cells) with `padding` spaces between columns.
pub fn align(text: &str, padding: usize) -> String {
    let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // `split` yields a trailing empty line after a final '\n': keep it so the output
    // ends the same way the input did.
    let trailing_newline = text.ends_with('\n');
    if trailing_newline {
        lines.pop();
    }
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), padding, &mut widths, &mut out);
    if !trailing_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}

fn cell_width(cell: &str) -> usize {
    cell.chars().count()
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    padding: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A column block starts here: print what came before with the current widths.
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(cell_width(lines[this][column]) + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, padding, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j + 1 < line.len() {
                let w = cell_width(cell);
                out.extend(std::iter::repeat_n(' ', widths[j].saturating_sub(w)));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn aligns_table_with_three_spaces() {
        let t = "NAME\tREADY\tSTATUS\nnginx\t0/1\tPending\nnginx-deployment-abc\t1/1\tRunning\n";
        assert_eq!(
            align(t, 3),
            "NAME                   READY   STATUS\n\
             nginx                  0/1     Pending\n\
             nginx-deployment-abc   1/1     Running\n"
        );
    }

    #[test]
    fn last_cell_is_not_padded_and_blocks_are_per_run() {
        let t = "Name:\tnginx\nLabels:\tapp=nginx\nContainers:\n  nginx:\n    Image:\tnginx:1.14.2\n    Port:\t80/TCP\n";
        assert_eq!(
            align(t, 2),
            "Name:    nginx\nLabels:  app=nginx\nContainers:\n  nginx:\n    Image:  nginx:1.14.2\n    Port:   80/TCP\n"
        );
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(align("é\tx\nab\ty\n", 1), "é  x\nab y\n");
    }

    #[test]
    fn keeps_missing_trailing_newline() {
        assert_eq!(align("a\tb", 1), "a b");
    }
}
